public enum SupervisorMain {
    public static func main(_ arguments: [String]) -> Int32 { 1 }
}
